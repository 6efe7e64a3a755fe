"""The Spark engine of the heavy fraud steps: the same definitions as toolkit/fraud on
Apache Spark, for order histories past one machine's memory (PySpark: the `spark` extra)."""
