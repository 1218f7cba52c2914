"""ecom: a Dagster asset platform for e-commerce click-stream events."""
