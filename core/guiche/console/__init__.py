"""The agent console: a web page Guichê serves at `/`, built on the public API only.

Static ES modules shipped in the wheel (no Node build, no CDN); `routes` serves them and
plugins' console pages, `pages` is the one REST route the console needed that the API
lacked (which plugin pages this caller may open).
"""
