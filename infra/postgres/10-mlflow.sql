-- One PostgreSQL for the stack: the prefect database comes from POSTGRES_DB, MLflow's is made here.
CREATE DATABASE mlflow;
