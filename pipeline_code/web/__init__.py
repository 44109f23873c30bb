"""What every HTTP app of the chain shares (the API, the model server, the
collector): ASGI helpers and JSON errors (``http``), Prometheus metrics
(``metrics``), the uvicorn server that drains on signals (``server``), and
the Lambda function-URL bridge (``aws_lambda``). No app imports another.
"""
