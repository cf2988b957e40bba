"""A data migration over every tenant's rows. The migrating role owns the tables, and FORCE ROW
LEVEL SECURITY applies to owners: without a tenant context it would update nothing (`UPDATE 0`,
silently). It runs in audited cross-tenant mode instead (the role is a tenant_superuser member)."""
from django.db import migrations


def fill_codes(apps, schema_editor):
    Project = apps.get_model("projects", "Project")
    with schema_editor.connection.cursor() as c:
        c.execute("SELECT tenant.enter_cross_tenant(%s)", ["migration projects.0002: project codes"])
    try:
        for p in Project.objects.filter(code=""):
            p.code = f"P-{p.pk}"
            p.save(update_fields=["code"])
    finally:
        with schema_editor.connection.cursor() as c:
            c.execute("SELECT tenant.exit_cross_tenant()")


class Migration(migrations.Migration):
    dependencies = [("projects", "0001_initial")]
    operations = [migrations.RunPython(fill_codes, migrations.RunPython.noop)]
