"""The recommender family: content-based product recommendations."""
