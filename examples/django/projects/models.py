from django.db import models


class Tag(models.Model):
    # Filled by the database from the tenant context (an explicit NULL is filled too): the model
    # never sets it.
    tenant_id = models.BigIntegerField(null=True, editable=False)
    name = models.CharField(max_length=50)
    color = models.CharField(max_length=20, default="grey")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant_id", "name"], name="tag_name_per_tenant")]


class Project(models.Model):
    tenant_id = models.BigIntegerField(null=True, editable=False)
    name = models.CharField(max_length=100)
    code = models.CharField(max_length=20, blank=True, default="")
    # Django creates projects_project_tags itself, without a tenant column: auto_isolate =
    # add_column gives it one (defaulting to the context) and isolates it.
    tags = models.ManyToManyField(Tag)
