"""What request handlers use, core's and plugins' alike: the `endpoint` declaration
(auth, RBAC, validation), multipart reading, cursor pages and the webhook receiver.

Below the plugin host (which re-exports parts of it in `guiche.plugin`) and above the
domain; the web edge (`guiche.web`: middleware, OpenAPI, security) builds on it.
"""
