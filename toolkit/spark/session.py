"""The Spark session, JDBC access to the configured database and the engine choice.

Spark reaches the database over JDBC; the drivers come from Debian's packages
(`libpostgresql-jdbc-java`, `libmariadb-java`) when present, else from `engine.spark.jars`.
Passwords travel in the JDBC properties, never in a URL Spark could print.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MlkitError, message_line

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from ..config import Config

ENGINES = ("local", "spark", "auto")
DEBIAN_JARS = {
    "postgresql": "/usr/share/java/postgresql.jar",
    "mysql": "/usr/share/java/mariadb-java-client.jar",
}
JDBC_DRIVERS = {"postgresql": "org.postgresql.Driver", "mysql": "org.mariadb.jdbc.Driver"}
# jdbc:mysql: (which MariaDB's driver takes with permitMysqlScheme) is what selects Spark's
# MySQL dialect: backtick quoting, MySQL's types.
JDBC_SCHEMES = {"postgresql": "postgresql", "mysql": "mysql"}
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}
# Spark's own settings mlkit relies on whatever the config says: timestamps are read and
# compared in UTC, as the local engine does.
FIXED_CONF = {"spark.sql.session.timeZone": "UTC"}
# Defaults the config's `engine.spark.conf` may override: a quiet driver without a web UI.
DEFAULT_CONF = {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"}


def _import_pyspark():
    try:
        import pyspark  # noqa: F401
    except ModuleNotFoundError:
        raise MlkitError(
            "the Spark engine needs PySpark, which is not installed",
            hint="pip install 'mlkit[spark]' (with Java 17), or use --engine local",
        ) from None


def spark_settings(config: Config) -> dict[str, Any]:
    return config.get("engine.spark")


def driver_jars(config: Config) -> list[str]:
    """The JDBC driver jars: `engine.spark.jars` (comma-separated) when set, else Debian's
    packaged drivers that are installed."""
    given = [p.strip() for p in str(spark_settings(config)["jars"]).split(",") if p.strip()]
    if given:
        missing = [p for p in given if not Path(p).is_file()]
        if missing:
            raise MlkitError(
                f"engine.spark.jars: {', '.join(missing)} not found",
                hint="point engine.spark.jars at the JDBC driver jars (comma-separated)",
            )
        return given
    return [path for path in DEBIAN_JARS.values() if Path(path).is_file()]


def spark_session(config: Config) -> SparkSession:
    """The Spark session on `engine.spark.master` (local[*] by default; empty: spark-submit's)
    with the config's `engine.spark.conf` and the JDBC driver jars; reused while it lives."""
    _import_pyspark()
    from pyspark.sql import SparkSession

    settings = spark_settings(config)
    # Spark's 200 shuffle partitions by default cost a task each per shuffle: the features
    # shuffle the orders some 25 times, and on a few cores that overhead was a third of the
    # run. mlkit's partitions (those of its JDBC reads) unless the config says otherwise.
    defaults = {**DEFAULT_CONF, "spark.sql.shuffle.partitions": str(settings["partitions"])}
    conf = {**defaults, **{str(k): str(v) for k, v in settings["conf"].items()}, **FIXED_CONF}
    # The JDBC drivers turn a naive timestamp into an instant in the JVM's zone: UTC, as stored.
    for side in ("driver", "executor"):
        key = f"spark.{side}.extraJavaOptions"
        conf[key] = f"{conf.get(key, '')} -Duser.timezone=UTC".strip()
    if str(settings["master"]).startswith("local") and not os.environ.get("PYSPARK_PYTHON"):
        # Local executors run this interpreter. PySpark starts `python3` from PATH otherwise
        # (it reads PYSPARK_PYTHON, not the conf, outside spark-submit), which under cron,
        # or with a virtualenv's mlkit run by its path, is another Python without PySpark:
        # every Python task (training, scoring) failed.
        os.environ["PYSPARK_PYTHON"] = sys.executable
    jars = driver_jars(config)
    if jars:
        conf["spark.jars"] = ",".join([*jars, *_listed(conf.get("spark.jars", ""))])
    builder = SparkSession.builder.appName("mlkit")
    if settings["master"]:  # empty: spark-submit's --master (local[*] when run plainly)
        builder = builder.master(settings["master"])
    for key, value in conf.items():
        builder = builder.config(key, value)
    try:
        with warnings.catch_warnings():
            # PySpark's notice that it is not yet tested with pandas 3: mlkit hands Spark no
            # pandas frames.
            warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas")
            session = builder.getOrCreate()
    except Exception as exc:  # the JVM did not start: no Java, a bad master or setting
        first = message_line(exc)
        raise MlkitError(
            f"cannot start Spark on {settings['master'] or 'the default master'}: {first}",
            hint="Spark needs Java 17 (JAVA_HOME or java on PATH) and a reachable master; "
            "check engine.spark in the config, or use --engine local",
        ) from None
    session.sparkContext.setLogLevel("ERROR")  # Spark's warnings are not the command's output
    return session


SPARK_ERROR_CHARS = 300


@contextmanager
def spark_errors() -> Iterator[None]:
    """A failed Spark job as one `error:` line (the Java exception, not its stack trace)."""
    try:
        yield
    except Exception as exc:
        from py4j.protocol import Py4JError, Py4JJavaError
        from pyspark.errors import PySparkException

        if not isinstance(exc, (Py4JError, PySparkException)):
            raise
        java = getattr(exc, "java_exception", None)
        text = str(java.toString()) if isinstance(exc, Py4JJavaError) and java else str(exc)
        first = (text.strip().splitlines() or [type(exc).__name__])[0][:SPARK_ERROR_CHARS]
        hint = "run with --verbose for Spark's trace"
        if "ClassNotFoundException" in first:
            hint = (
                "the JDBC driver jar is not on Spark's classpath: set engine.spark.jars, or "
                "under spark-submit pass it with --jars"
            )
        raise MlkitError(f"Spark job failed: {first}", hint=hint) from exc


def _listed(text: str) -> list[str]:
    return [p for p in text.split(",") if p]


def java_available() -> bool:
    """Whether a Java runtime Spark can start is present (JAVA_HOME or java on PATH)."""
    import shutil

    home = os.environ.get("JAVA_HOME")
    return bool((home and Path(home, "bin", "java").is_file()) or shutil.which("java"))


def jdbc_options(url: str, state_schema: str | None = None) -> dict[str, str]:
    """Spark's JDBC options (url, user, password, driver) for a SQLAlchemy URL of a
    PostgreSQL or MySQL/MariaDB database; with `state_schema`, unqualified names resolve
    there first, as make_engine arranges for SQLAlchemy."""
    from ..db import dialect_name, parse_url

    parsed = parse_url(url)
    dialect = dialect_name(parsed)
    if dialect not in JDBC_DRIVERS:
        raise MlkitError(
            f"the Spark engine reads PostgreSQL or MySQL over JDBC, not {dialect}",
            hint="use --engine local for an SQLite database",
        )
    database = state_schema if dialect == "mysql" and state_schema else parsed.database or ""
    port = parsed.port or DEFAULT_PORTS[dialect]
    jdbc = f"jdbc:{JDBC_SCHEMES[dialect]}://{parsed.host or 'localhost'}:{port}/{database}"
    if dialect == "postgresql" and state_schema:
        jdbc += f"?currentSchema={state_schema},public"
    if dialect == "mysql":
        jdbc += "?permitMysqlScheme"
    options = {"url": jdbc, "driver": JDBC_DRIVERS[dialect], "user": parsed.username or ""}
    if parsed.password:
        options["password"] = str(parsed.password)
    return options


def config_jdbc_options(config: Config) -> dict[str, str]:
    """jdbc_options for the config's database and state schema."""
    state = config.data["database"].get("state_schema") or None
    return jdbc_options(config.database_url, state_schema=state)


def read_table(
    spark: SparkSession,
    url: str | dict[str, str],
    table_or_query: str,
    partition_column: str | None = None,
    *,
    num_partitions: int = 8,
    bounds: tuple[Any, Any] | None = None,
    fetch_size: int = 10_000,
) -> DataFrame:
    """A table (a name or a SELECT) read over JDBC; with `partition_column` (numeric, date or
    timestamp) as `num_partitions` parallel range reads between its bounds, which are read
    from the database unless given. `url` is a SQLAlchemy URL or jdbc_options' result."""
    options = jdbc_options(url) if isinstance(url, str) else dict(url)
    source = table_or_query.strip()
    if source.lower().startswith(("select", "with")):
        source = f"({source}) AS mlkit_source"
    reader = spark.read.format("jdbc").options(**options, fetchsize=str(fetch_size))
    if partition_column is None or num_partitions <= 1:
        return reader.option("dbtable", source).load()
    if bounds is None:
        limits = (
            reader.option(
                "dbtable",
                f"(SELECT MIN({partition_column}) AS lo, MAX({partition_column}) AS hi "
                f"FROM {source}) AS mlkit_bounds",
            )
            .load()
            .first()
        )
        bounds = (limits["lo"], limits["hi"])
    low, high = bounds
    if low is None or high is None or low == high:  # empty or one value: one read
        return reader.option("dbtable", source).load()
    return (
        reader.option("dbtable", source)
        .option("partitionColumn", partition_column)
        .option("lowerBound", str(low))
        .option("upperBound", str(high))
        .option("numPartitions", str(num_partitions))
        .load()
    )


def engine_choice(config: Config, rows: int, requested: str | None = None) -> str:
    """ "local" or "spark": the requested engine (else `engine.name`); `auto` picks Spark
    above `engine.auto_rows` rows."""
    name = requested or config.get("engine.name")
    if name not in ENGINES:
        raise MlkitError(
            f"unknown engine {name!r}", hint="engine.name / --engine: local, spark or auto"
        )
    if name != "auto":
        return name
    return "spark" if rows > int(config.get("engine.auto_rows")) else "local"


def choice_reason(config: Config, rows: int, requested: str | None = None) -> str:
    """Why engine_choice picked its engine, in one line for the command's output."""
    name = requested or config.get("engine.name")
    chosen = engine_choice(config, rows, requested)
    if name != "auto":
        origin = "--engine" if requested else "engine.name"
        return f"engine {chosen} ({origin})"
    limit = int(config.get("engine.auto_rows"))
    side = "above" if chosen == "spark" else "at or below"
    return f"engine {chosen} (auto: {rows:,} orders, {side} engine.auto_rows {limit:,})"


def choose_engine(
    config: Config, requested: str | None, count_rows: Callable[[], int]
) -> tuple[str, str]:
    """engine_choice and choice_reason, the rows (orders) counted only for `auto`."""
    rows = count_rows() if (requested or config.get("engine.name")) == "auto" else 0
    return engine_choice(config, rows, requested), choice_reason(config, rows, requested)
