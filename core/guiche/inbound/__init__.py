"""Inbound: turning a channel's normalised `WebhookBatch` into stored, routed conversations."""

from guiche.inbound.ingest import ChannelRow, IngestResult, ingest, load_channel

__all__ = ["ChannelRow", "IngestResult", "ingest", "load_channel"]
