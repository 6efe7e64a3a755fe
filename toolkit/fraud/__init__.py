"""The fraud family: leakage-free features, ETL, training sets."""
