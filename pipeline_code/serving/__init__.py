"""The serve link: the model server (one image for Vertex AI, SageMaker and
Azure ML) and the recommendation API in front of it."""
