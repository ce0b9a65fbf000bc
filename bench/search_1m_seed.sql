-- 1,000,000 synthetic messages: 4 tenants (one holds 70%), 20,000 conversations, Portuguese-ish bodies.
INSERT INTO tenants (id, name, slug) SELECT gen_random_uuid(), 'T'||g, 'bench-t'||g FROM generate_series(1,4) g;
INSERT INTO channels (tenant, type, name) SELECT id, 'fake', 'WA' FROM tenants WHERE slug LIKE 'bench-t%';
INSERT INTO contacts (tenant, name, phone)
SELECT t.id, 'Cliente '||g, '+55119'||lpad((g*4+t.n)::text, 8, '0')
FROM (SELECT id, row_number() OVER (ORDER BY slug) n FROM tenants WHERE slug LIKE 'bench-t%') t,
     generate_series(1, 5000) g;
INSERT INTO conversations (tenant, contact, channel, status)
SELECT c.tenant, c.id, ch.id, (ARRAY['PENDING','ACTIVE','CLOSED','CLOSED'])[1 + (hashtext(c.id::text) & 3)]
FROM contacts c JOIN channels ch ON ch.tenant = c.tenant
WHERE c.tenant IN (SELECT id FROM tenants WHERE slug LIKE 'bench-t%');
CREATE TEMP TABLE words(w text[]);
INSERT INTO words VALUES (ARRAY['oi','bom','dia','pedido','entrega','boleto','pagamento','cancelar','troca',
 'produto','obrigado','quando','chega','rastreio','nota','fiscal','cartão','pix','desconto','atendimento',
 'preciso','ajuda','meu','não','chegou','ainda','valor','frete','endereço','cliente','loja','compra',
 'devolução','prazo','urgente','whatsapp','tamanho','cor','modelo','estoque']);
CREATE TEMP TABLE convs AS SELECT row_number() OVER () AS n, id, tenant, contact, channel FROM conversations
  WHERE tenant IN (SELECT id FROM tenants WHERE slug LIKE 'bench-t%');
-- skew: conversations 1..14000 (tenant order random) get 70% of messages
INSERT INTO messages (created_at, tenant, conversation, contact, channel, direction, body, status)
SELECT now() - (g || ' seconds')::interval * 2,
       c.tenant, c.id, c.contact, c.channel,
       CASE WHEN g % 2 = 0 THEN 'in' ELSE 'out' END,
       (SELECT string_agg(w.w[1 + floor(random() * 40)::int + 0 * g], ' ') FROM words w, generate_series(1, 4 + g % 9) k)
         || CASE WHEN g % 1000 = 0 THEN ' pedido #' || g ELSE '' END,
       'sent'
FROM generate_series(1, 1000000) g
JOIN convs c ON c.n = 1 + (g % 20000);
ANALYZE;
