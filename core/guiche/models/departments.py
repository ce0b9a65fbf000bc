"""Departments (queues) and the agents that serve them."""

from piccolo.columns import UUID, Boolean, ForeignKey, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from guiche.models.tenants import Tenant, User


class Department(Table, tablename="departments"):
    id = UUID(primary_key=True)
    tenant = ForeignKey(Tenant)
    name = Varchar(length=120)
    description = Text(default="")
    is_active = Boolean(default=True)
    created_at = Timestamptz(default=TimestamptzNow())


class DepartmentMember(Table, tablename="department_members"):
    id = UUID(primary_key=True)
    tenant = ForeignKey(Tenant)
    department = ForeignKey(Department)
    user = ForeignKey(User)
    created_at = Timestamptz(default=TimestamptzNow())
