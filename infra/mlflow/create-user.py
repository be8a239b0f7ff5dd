"""Make the pipeline's MLflow user, as the admin; a second run finds it and changes nothing.

    MLFLOW_TRACKING_URI=http://mlflow:5000 MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD=... \
    SER_MLFLOW_USER=nightly SER_MLFLOW_PASSWORD=... python infra/mlflow/create-user.py

docker-compose.yml runs it once (create-mlflow-user). To rotate the user's password, the admin calls
``AuthServiceClient(uri).update_user_password(user, new)`` and the services get the new value in .env.
"""

from __future__ import annotations

import os

from mlflow.exceptions import MlflowException
from mlflow.server.auth.client import AuthServiceClient

client = AuthServiceClient(os.environ.get("MLFLOW_TRACKING_URI", "http://mlflow:5000"))
name, password = os.environ["SER_MLFLOW_USER"], os.environ["SER_MLFLOW_PASSWORD"]
try:
    client.get_user(name)
    print(f"MLflow user {name} exists")
except MlflowException:
    client.create_user(name, password)
    print(f"MLflow user {name} created")
