-- The image creates POSTGRES_DB (`backend`); each service owns its database,
-- so the catalog gets its own. Runs once, on an empty data volume.
CREATE DATABASE product OWNER async_micro;
