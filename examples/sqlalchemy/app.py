"""SQLAlchemy 2 against qualityfoundry_tenant: one transaction per unit of work, in one tenant.

    python app.py create   as the tables' owner (auto_isolate = on for it: created isolated)
    python app.py run      as the application role (a tenant_user member)

The connection URL is QFT_SQLALCHEMY_URL (postgresql+psycopg://user@/db?host=...&port=...).
`run` checks what it sees itself and prints it as JSON; the frameworks tier checks the database.
"""
import json
import os
import sys
from contextlib import contextmanager

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint, create_engine, func, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

engine = create_engine(os.environ["QFT_SQLALCHEMY_URL"])


class Base(DeclarativeBase):
    pass


class Project(Base):
    __tablename__ = "sa_projects"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # Left out of the model's INSERTs, or sent as None: the database fills it from the context.
    tenant_id: Mapped[int | None] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(100))


class Label(Base):
    __tablename__ = "sa_labels"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(BigInteger)
    project_id: Mapped[int] = mapped_column(ForeignKey("sa_projects.id"))
    name: Mapped[str] = mapped_column(String(50))
    uses: Mapped[int] = mapped_column(default=1)


@contextmanager
def tenant_session(slug):
    """One transaction in tenant `slug`; the context is local to it (safe behind PgBouncer)."""
    with Session(engine) as session, session.begin():
        session.execute(select(func.tenant.set_tenant(slug, True)))
        yield session


def run():
    for slug in ["acme", "globex"]:
        with tenant_session(slug) as s:
            # The unit of work; tenant_id None is sent as NULL and filled by the database.
            apollo = Project(name=f"{slug} apollo", tenant_id=None)
            s.add_all([apollo, Project(name=f"{slug} gemini")])
            s.flush()
            # A bulk INSERT of plain dicts (executemany / insertmanyvalues).
            s.execute(insert(Project), [{"name": f"{slug} mercury"}, {"name": f"{slug} vostok"}])
            # INSERT ... ON CONFLICT on the tenant's own unique key: the second one updates.
            for _ in range(2):
                upsert = pg_insert(Label).values(project_id=apollo.id, name="urgent")
                s.execute(
                    upsert.on_conflict_do_update(
                        index_elements=["tenant_id", "name"], set_={"uses": Label.uses + 1}
                    )
                )
            s.execute(pg_insert(Label).values(project_id=apollo.id, name="urgent").on_conflict_do_nothing())
    seen = {}
    for slug in ["acme", "globex"]:
        with tenant_session(slug) as s:
            seen[slug] = {
                "projects": list(s.scalars(select(Project.name).order_by(Project.name))),
                "labels": [f"{n}:{u}" for n, u in s.execute(select(Label.name, Label.uses))],
            }
    # No tenant: nothing to read, nothing can be written.
    with Session(engine) as s:
        seen["none"] = s.scalar(select(func.count()).select_from(Project))
    try:
        with Session(engine) as s, s.begin():
            s.add(Project(name="nobody's"))
        seen["none_write"] = "accepted"
    except ProgrammingError as e:
        seen["none_write"] = e.orig.sqlstate
    assert seen["acme"]["projects"] == ["acme apollo", "acme gemini", "acme mercury", "acme vostok"], seen
    assert seen["globex"]["labels"] == ["urgent:2"], seen
    assert seen["none"] == 0 and seen["none_write"] == "42501", seen
    print(json.dumps(seen, sort_keys=True))


if __name__ == "__main__":
    if sys.argv[1:] == ["create"]:
        Base.metadata.create_all(engine)
    elif sys.argv[1:] == ["run"]:
        run()
    else:
        sys.exit("usage: app.py create|run")
