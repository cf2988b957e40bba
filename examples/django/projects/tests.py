"""Run by Django's test runner (`manage.py test`) in a test database copied from a template that
has the extension. The runner's role owns the tables: FORCE ROW LEVEL SECURITY isolates it too."""
from django.db import ProgrammingError, connection, transaction
from django.test import TestCase

from .models import Project, Tag
from .tenancy import tenant


def sql(query):
    with connection.cursor() as c:
        c.execute(query)
        return c.fetchall()


class TenantIsolation(TestCase):
    def test_without_a_tenant_nothing_can_be_written(self):
        with self.assertRaises(ProgrammingError), transaction.atomic():
            Project.objects.create(name="nobody's")

    def test_each_tenant_sees_only_its_rows(self):
        with tenant("acme"):
            Project.objects.bulk_create([Project(name="a1"), Project(name="a2")])
        with tenant("globex"):
            Project.objects.create(name="g1")
            self.assertEqual(list(Project.objects.values_list("name", flat=True)), ["g1"])
            self.assertEqual(Project.objects.filter(name="a1").update(name="stolen"), 0)
        with tenant("acme"):
            self.assertEqual(sorted(Project.objects.values_list("name", flat=True)), ["a1", "a2"])

    def test_many_to_many_rows_belong_to_the_tenant(self):
        with tenant("acme"):
            p = Project.objects.create(name="p")
            t = Tag.objects.create(name="t")
            p.tags.add(t)
            p.tags.add(t)  # INSERT ... ON CONFLICT DO NOTHING
            self.assertEqual(p.tags.count(), 1)
            self.assertEqual(
                sql("SELECT DISTINCT tenant_id FROM projects_project_tags"),
                sql("SELECT tenant.current_tenant_id()"),
            )
        with tenant("globex"):
            self.assertEqual(Project.tags.through.objects.count(), 0)

    def test_on_conflict_updates_within_the_tenant(self):
        for slug, color in [("acme", "red"), ("globex", "green")]:
            with tenant(slug):
                Tag.objects.create(name="urgent")
                Tag.objects.bulk_create(
                    [Tag(name="urgent", color=color)],
                    update_conflicts=True,
                    unique_fields=["tenant_id", "name"],
                    update_fields=["color"],
                )
        with tenant("acme"):
            self.assertEqual(list(Tag.objects.values_list("color", flat=True)), ["red"])
        with tenant("globex"):
            self.assertEqual(list(Tag.objects.values_list("color", flat=True)), ["green"])

    def test_the_middleware_runs_each_request_in_its_tenant(self):
        with tenant("acme"):
            Project.objects.create(name="acme project")
        self.assertEqual(self.client.get("/projects/", HTTP_X_TENANT="acme").json(), {"projects": ["acme project"]})
        self.assertEqual(self.client.get("/projects/", HTTP_X_TENANT="globex").json(), {"projects": []})
