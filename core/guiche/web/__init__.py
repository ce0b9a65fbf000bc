"""HTTP plumbing shared by every route: errors, JSON, endpoint declarations, middlewares."""
