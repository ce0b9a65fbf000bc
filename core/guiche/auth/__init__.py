"""Authentication: passwords, access/refresh tokens, API keys, login throttling."""
