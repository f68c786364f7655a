"""agekit's speed and memory benchmarks; ``python -m benchmarks`` lists and runs them."""
