from tests.runtime.conftest import app, db_path, runtime  # noqa: F401  (shared fixtures)
