"""PostgreSQL adapter: SQLAlchemy 2 models, stores, units of work and Alembic migrations.

Modules: ``models`` (the schema), ``engine`` (engine and session factory),
``repositories`` (the ``domain.repositories`` stores), ``unit_of_work``,
``migrate`` (``upgrade``/``downgrade`` for ``orderflow db upgrade``) and
``admin`` (create/drop databases). Importing any of them never connects.
"""
