"""The Flex Template that runs the streaming pipeline on Dataflow.

``metadata.json`` lists the template's parameters (one per pipeline flag the
GCP processing component passes), ``Dockerfile`` builds the image that is
both the template launcher and the workers' SDK container, and ``main.py``
is the launcher's entry point. Build and push the image, then let
``pulumi up`` write the template spec and start the job (README: GCP).
"""
