"""Settings of the Django example. The connection comes from the environment (the frameworks tier
sets it): QFT_DB_NAME, QFT_DB_HOST (a socket directory or a host), QFT_DB_PORT, QFT_DB_USER, and
QFT_BACKUP_USER for the `backup` alias (a BYPASSRLS role: README, Backups and restores)."""
import os

SECRET_KEY = "example-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "projects",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "projects.tenancy.TenantMiddleware",
]
ROOT_URLCONF = "qftdemo.urls"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


def _database(user, **test):
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("QFT_DB_NAME", "qftdemo"),
        "USER": user,
        "HOST": os.environ.get("QFT_DB_HOST", ""),
        "PORT": os.environ.get("QFT_DB_PORT", ""),
        # The test database is a copy of a template that has the extension (CREATE EXTENSION
        # needs a superuser, the test runner is not one).
        "TEST": test,
    }


DATABASES = {
    "default": _database(
        os.environ.get("QFT_DB_USER", "qftdemo"),
        TEMPLATE=os.environ.get("QFT_TEST_TEMPLATE"),
    ),
    "backup": _database(os.environ.get("QFT_BACKUP_USER", "qftdemo_backup"), MIRROR="default"),
}
