"""What the application does, as the application role: each unit of work in one transaction in
one tenant. Prints what each tenant sees, as JSON, for the frameworks tier to check."""
import json

from django.core.management.base import BaseCommand

from projects.models import Project, Tag
from projects.tenancy import tenant


class Command(BaseCommand):
    help = "Create and read projects in two tenants"

    def handle(self, *args, **options):
        for slug in ["acme", "globex"]:
            with tenant(slug):
                # bulk_create sends tenant_id = NULL for every row: the database fills it.
                Project.objects.bulk_create([Project(name=f"{slug} one"), Project(name=f"{slug} two")])
                urgent = Tag.objects.create(name="urgent")
                # The same tag name in every tenant: the unique key is per tenant.
                Tag.objects.bulk_create(
                    [Tag(name="urgent", color="red"), Tag(name="later", color="blue")],
                    update_conflicts=True,
                    unique_fields=["tenant_id", "name"],
                    update_fields=["color"],
                )
                one = Project.objects.get(name=f"{slug} one")
                one.tags.add(urgent)
                one.tags.add(urgent)  # INSERT ... ON CONFLICT DO NOTHING: still one row
        seen = {}
        for slug in ["acme", "globex"]:
            with tenant(slug):
                seen[slug] = {
                    "projects": sorted(Project.objects.values_list("name", flat=True)),
                    "tags": sorted(f"{t.name}:{t.color}" for t in Tag.objects.all()),
                    "links": Project.tags.through.objects.count(),
                    "tags_of_one": sorted(Project.objects.get(name=f"{slug} one").tags.values_list("name", flat=True)),
                }
        # Outside a tenant nothing is visible.
        seen["none"] = {"projects": Project.objects.count(), "links": Project.tags.through.objects.count()}
        self.stdout.write(json.dumps(seen, sort_keys=True))
