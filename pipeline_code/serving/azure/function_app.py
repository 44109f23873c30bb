"""The Functions host's entry file: see ``pipeline_code.serving.azure_function``."""

from pipeline_code.serving.azure_function import build

app = build()
