"""Routing: which department takes a conversation, and which agent within it."""
