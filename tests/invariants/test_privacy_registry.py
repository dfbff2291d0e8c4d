"""The personal-data registry: every column of every table classified, checked against the live database,
and a new column without a classification fails naming table.column."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, Date, DateTime, ForeignKeyConstraint, LargeBinary, MetaData, Table, Text, Uuid

from bookwarden.core.classification import Category, Classification, Protection, SubjectKind, blind_index, personal
from bookwarden.db.base import Base
from bookwarden.privacy.registry import POLICIES, UNMAPPED, build, registry
from tests.helpers import populate


def test_every_column_of_every_table_is_classified():
    problems = registry().problems()
    assert problems == [], "\n".join(problems)


def test_the_registry_knows_every_table_and_column_of_the_live_database(owner_conn):
    catalog = owner_conn.execute(
        """SELECT c.table_name, c.column_name FROM information_schema.columns c
           JOIN information_schema.tables t USING (table_schema, table_name)
           WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'"""
    ).fetchall()
    missing = registry().check_catalog(catalog)
    assert missing == [], "\n".join(missing)


def _schema_copy() -> MetaData:
    copy = MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(copy)
    return copy


def _new_problems(schema: MetaData) -> list[str]:
    """Problems the changed schema has and the real one has not (that one is tested above)."""
    return sorted(set(build(schema).problems()) - set(build(_schema_copy()).problems()))


def test_a_new_column_without_classification_fails_naming_it():
    schema = _schema_copy()
    schema.tables["loans"].append_column(Column("renewal_note", Text))
    schema.tables["patrons"].append_column(Column("preferred_branch", Text))

    problems = _new_problems(schema)

    assert [p.split(":")[0] for p in problems] == ["loans.renewal_note", "patrons.preferred_branch"]
    assert "unclassified" in problems[0] and "info=personal(Category" in problems[0]


def test_structure_never_classifies_a_column_whose_name_looks_personal():
    schema = _schema_copy()
    # A timestamp and an id would pass by their structure, but not under a name that suggests a person.
    schema.tables["patrons"].append_column(Column("born_at", DateTime(timezone=True)))
    schema.tables["patrons"].append_column(Column("guardian_name_id", Uuid))
    schema.tables["patrons"].append_column(Column("renewed_at", DateTime(timezone=True)))
    schema.tables["patrons"].append_column(Column("birthday", Date))

    entries = build(schema).tables["patrons"]

    assert {p.split(":")[0] for p in _new_problems(schema)} == {
        "patrons.born_at",
        "patrons.guardian_name_id",
        "patrons.birthday",
    }
    assert entries.column("renewed_at").classification is Classification.NOT_PERSONAL
    assert not entries.column("renewed_at").declared


def test_misdeclarations_are_named():
    schema = MetaData()
    Table("tenants", schema, Column("id", Uuid, primary_key=True))
    Table(
        "pen_pals",
        schema,
        Column("tenant_id", Uuid, primary_key=True),
        Column("id", Uuid, primary_key=True),
        # Claims encryption, but is a text column: the claim cannot be true.
        Column("nickname", Text, info=personal(Category.IDENTITY)),
        Column("nickname_index", LargeBinary, info=blind_index("nick")),
        Column("category_typo", Text, info={"personal": True, "category": "hobbies", "protection": "plain"}),
        Column("undeclared_dict", Text, info={"sealed": True}),
        ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
    )

    problems = build(schema, unmapped={}).problems()

    named = {p.split(":")[0] for p in problems}
    assert named == {
        "pen_pals.nickname",  # subject_key on a text column
        "pen_pals.nickname_index",  # blind index of a column that is no personal column
        "pen_pals.category_typo",  # unknown category
        "pen_pals.undeclared_dict",  # info without the vocabulary
        "pen_pals",  # personal data, but no row links to a subject
    }


def test_categories_and_subject_links_are_read_from_the_models():
    found = registry()
    patrons = found.tables["patrons"]
    assert patrons.categories == (
        Category.AFFILIATION,
        Category.CONTACT,
        Category.IDENTITY,
        Category.INSTITUTIONAL_ID,
    )
    assert patrons.column("email").protection is Protection.SUBJECT_KEY
    email_index = patrons.column("email_index")
    assert (email_index.classification, email_index.index_of) == (Classification.PSEUDONYMOUS, "email")
    assert "outside this database" in email_index.reason

    links = {t: {(link.kind, link.via) for link in found.tables[t].subject_links} for t in found.tables}
    assert links["loans"] == {(SubjectKind.PATRON, "loans.patron_id -> patrons")}
    assert links["reading_list_items"] == {
        (SubjectKind.PATRON, "reading_list_items.list_id -> reading_lists.patron_id -> patrons")
    }
    assert (SubjectKind.PATRON, "accounts.patron_id -> patrons") in links["accounts"]
    assert links["outbox"] == {(SubjectKind.CONTACT, "outbox.to_address")}
    assert found.tables["outbox"].column("body").protection is Protection.TENANT_KEY
    assert (SubjectKind.PRINCIPAL, "audit_events.actor_id") in links["audit_events"]
    assert found.tables["sessions"].column("source_address").protection is Protection.PLAIN

    per_table = found.categories_per_table(tenant_only=True)
    assert per_table["searches"] == (Category.SEARCH_HISTORY,)
    assert "tenants" not in per_table and "jobs" not in per_table  # platform tables hold no personal data


def test_every_category_has_purposes_recipients_and_retention():
    assert set(POLICIES) == set(Category)
    for category, policy in POLICIES.items():
        assert policy.purposes and policy.recipients and policy.retention and policy.description, category
        assert policy.keep_days is None or policy.keep_days > 0
    in_use = {c for entry in registry().tables.values() for c in entry.categories}
    assert {Category.CIRCULATION_HISTORY, Category.SEARCH_HISTORY, Category.CREDENTIALS} <= in_use


def test_the_unmapped_declarations_name_only_unmapped_tables():
    # A table the ORM maps later keeps the model's own declarations; a stale entry here would mislead.
    assert not set(UNMAPPED) & set(Base.metadata.tables)


@pytest.fixture
def stored(client_for, tenant, in_tenant):
    """Raw bytes of every column of the rows populate() made, as the database holds them."""
    from sqlalchemy import text

    made = populate(client_for(tenant), 7)
    rows = {}
    with in_tenant(tenant) as session:
        for kind, record in made.items():
            row = session.execute(
                text(f"SELECT * FROM {kind.table} WHERE id = :id"),  # noqa: S608 - table names from the code
                {"id": record["id"]},
            )
            rows[kind.table] = row.mappings().one()
    return made, rows


def test_columns_declared_sealed_hold_no_plaintext(stored):
    """The registry's protection claims hold for real rows: sealed columns hold ciphertext only."""
    made, rows = stored
    checked = 0
    for kind, record in made.items():
        entry = registry().tables[kind.table]
        for column in entry.personal_columns:
            value = record.get(column.name)
            if value is None or column.protection not in (Protection.SUBJECT_KEY, Protection.TENANT_KEY):
                continue
            raw = bytes(rows[kind.table][column.name])
            assert str(value).encode() not in raw, column.qualified
            checked += 1
    assert checked >= 12
