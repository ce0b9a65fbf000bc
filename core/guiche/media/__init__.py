"""Media: stored files (uploads and fetched attachments) in core's storage, their checks
and retention, and inbound attachments fetched once through the channel's adapter."""
