"""Alembic environment: online on the connection `migrate.upgrade` hands over, offline
(`db upgrade --sql`) into a buffer. The version table lives in the project's namespace."""

from alembic import context

from ops_platform.db.schema import metadata

config = context.config
state_schema = config.attributes["state_schema"]
options = {
    "target_metadata": metadata,
    "version_table_schema": state_schema,
    "render_as_batch": True,
}
if context.is_offline_mode():
    context.configure(
        dialect_name=config.attributes["dialect_name"],
        as_sql=True,
        literal_binds=True,
        output_buffer=config.output_buffer,
        **options,
    )
    create_schema = config.attributes["create_schema"]
else:
    from sqlalchemy import inspect

    connection = config.attributes["connection"]
    context.configure(connection=connection, **options)
    # Checked first: a role that owns the schema a DBA made for it need not be allowed to
    # create schemas (Postgres checks that right before IF NOT EXISTS).
    create_schema = connection.dialect.name == "postgresql" and not inspect(connection).has_schema(
        state_schema
    )

with context.begin_transaction():
    # The version table is created in the project's schema before the first revision runs.
    if create_schema:
        context.execute(f'CREATE SCHEMA IF NOT EXISTS "{state_schema}"')
    context.run_migrations()
