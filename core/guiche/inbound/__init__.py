"""Inbound: turning a channel's normalised `WebhookBatch` into stored, routed conversations."""
