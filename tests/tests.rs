mod secrets_store;
