"""The Optuna study of ``hparams_search=optuna`` kept in a SQLite file in the sweep folder, so a search can be
resumed (the same command again adds its trials to the same study) and inspected (``optuna.load_study``)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

STUDY_FILE = "optuna.db"


def study_storage(folder: str, name: str = STUDY_FILE) -> str:
    """The ``sqlite:///`` URL of the study file ``folder/name`` (the folder is made), its schema ready.

    Optuna 2.10 (the version hydra-optuna-sweeper 1.3 allows) stamps a new database's schema version on a
    connection that SQLAlchemy 2 never commits, and then refuses the database it just made (an AssertionError in
    ``get_current_version``). The stamp is written here in a committed transaction first; a database that
    already holds it is left as it is.
    """
    path = (Path(folder) / name).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{path}"
    stamp_schema(url)
    return url


def stamp_schema(url: str) -> None:
    """Create the study tables at ``url`` and commit their schema version, unless it is there. An engine of its
    own does it, before Optuna opens the file: Optuna's own first stamp holds an uncommitted write on a
    connection it never closes, and a second writer then finds the database locked."""
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from optuna.storages._rdb import models
    from sqlalchemy import create_engine

    script = ScriptDirectory(str(Path(models.__file__).parent / "alembic"))  # optuna's schema revisions
    engine = create_engine(url)
    try:
        models.BaseModel.metadata.create_all(engine)
        with engine.begin() as connection:
            context = MigrationContext.configure(connection)
            if context.get_current_revision() is None:
                context.stamp(script, script.get_current_head())
    finally:
        engine.dispose()


def register_study_resolver() -> None:
    """``${study_storage:FOLDER}`` for ``hydra.sweeper.storage`` (``conf/hparams_search/optuna.yaml``)."""
    if not OmegaConf.has_resolver("study_storage"):
        OmegaConf.register_new_resolver("study_storage", study_storage)
