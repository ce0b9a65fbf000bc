"""Conversations: who may see which, and the transitions agents and supervisors make."""
