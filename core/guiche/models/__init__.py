"""Piccolo tables, one module per aggregate. The schema itself is owned by the migrations."""

from guiche.models.audit import AuditLog
from guiche.models.auth import ApiKey, RefreshToken
from guiche.models.channels import Channel
from guiche.models.contacts import Contact, ContactIdentity
from guiche.models.conversations import Conversation, Note, Tabulation
from guiche.models.departments import Department, DepartmentMember
from guiche.models.events import Event, IdempotencyKey
from guiche.models.media import MediaFile
from guiche.models.messages import Message, MessageKey
from guiche.models.plugins import TenantPlugin
from guiche.models.templates import Template
from guiche.models.tenants import Invitation, Membership, Tenant, User
from guiche.models.usage import ProviderCall, ProviderUsage

CORE_TABLES = [
    Tenant,
    User,
    Membership,
    Invitation,
    Department,
    DepartmentMember,
    Contact,
    ContactIdentity,
    Channel,
    Tabulation,
    Conversation,
    Message,
    MessageKey,
    Note,
    Template,
    TenantPlugin,
    RefreshToken,
    ApiKey,
    AuditLog,
    ProviderUsage,
    ProviderCall,
    Event,
    IdempotencyKey,
    MediaFile,
]

__all__ = [t.__name__ for t in CORE_TABLES] + ["CORE_TABLES"]
