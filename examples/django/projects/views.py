from django.http import JsonResponse

from .models import Project


def project_names(request):
    return JsonResponse({"projects": list(Project.objects.order_by("name").values_list("name", flat=True))})
