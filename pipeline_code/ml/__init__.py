"""The recommender: training data, model, evaluation and training."""
