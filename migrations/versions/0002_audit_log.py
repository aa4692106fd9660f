"""audit_log: append-only audit records, sealed into a hash chain (deltran/audit.py)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Append-only in the database, whoever connects: a record may be inserted (unsealed), and
# sealed once by the sealer (seal columns set, nothing else changed); nothing else.
# Whoever disables or drops the trigger still cannot alter the chain unnoticed: the hashes
# catch it (`deltran audit verify`).
GUARD_FUNCTION = """
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.seal_seq IS NOT NULL OR NEW.prev_hash IS NOT NULL OR NEW.hash IS NOT NULL THEN
            RAISE EXCEPTION 'audit_log: a record is inserted unsealed; only the sealer seals it'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN NEW;
    END IF;
    IF TG_OP = 'UPDATE'
       AND OLD.seal_seq IS NULL AND OLD.prev_hash IS NULL AND OLD.hash IS NULL
       AND NEW.seal_seq IS NOT NULL AND NEW.prev_hash IS NOT NULL AND NEW.hash IS NOT NULL
       AND (NEW.id, NEW.recorded_at, NEW.actor, NEW.action, NEW.subject, NEW.result, NEW.details)
           IS NOT DISTINCT FROM
           (OLD.id, OLD.recorded_at, OLD.actor, OLD.action, OLD.subject, OLD.result, OLD.details)
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only: % refused (only sealing an unsealed record may update it)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("details", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("seal_seq", sa.BigInteger(), nullable=True),
        sa.Column("prev_hash", sa.CHAR(length=64), nullable=True),
        sa.Column("hash", sa.CHAR(length=64), nullable=True),
        sa.CheckConstraint(
            "(seal_seq IS NULL) = (prev_hash IS NULL) AND (seal_seq IS NULL) = (hash IS NULL)",
            name=op.f("ck_audit_log_sealed_whole"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
        sa.UniqueConstraint("seal_seq", name=op.f("uq_audit_log_seal_seq")),
    )
    op.create_index(
        "ix_audit_log_unsealed", "audit_log", ["id"], unique=False, postgresql_where=sa.text("seal_seq IS NULL")
    )
    op.execute(GUARD_FUNCTION)
    op.execute(
        "CREATE TRIGGER audit_log_append_only BEFORE INSERT OR UPDATE OR DELETE ON audit_log"
        " FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
    )
    op.execute(
        "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log"
        " FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
    op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
    op.drop_index("ix_audit_log_unsealed", table_name="audit_log", postgresql_where=sa.text("seal_seq IS NULL"))
    op.drop_table("audit_log")
    op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
