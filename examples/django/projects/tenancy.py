"""The tenant per transaction, for qualityfoundry_tenant."""
from contextlib import contextmanager

from django.db import connections, transaction


@contextmanager
def tenant(slug, using="default"):
    """Runs the block in one transaction in tenant `slug`. The context is local to the
    transaction (is_local => true), so a pooled connection never carries it to the next user."""
    with transaction.atomic(using=using):
        with connections[using].cursor() as cursor:
            cursor.execute("SELECT tenant.set_tenant(%s, is_local => true)", [slug])
        yield


class TenantMiddleware:
    """Each request in its own transaction, in the tenant it names (here a header; in a real
    application the subdomain or the signed-in user's membership, or a signed token:
    tenant.set_tenant_signed)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        slug = request.headers.get("X-Tenant")
        if not slug:
            return self.get_response(request)
        with tenant(slug):
            return self.get_response(request)
