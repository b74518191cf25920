-- Lumen's own database: the personal data the seed service keeps outside troth.
-- Portable DDL (SQLite, PostgreSQL, MySQL/MariaDB). make_db.py creates and fills it;
-- ../datasets.yaml annotates it for troth's rights engine.

CREATE TABLE plans (
  id INTEGER PRIMARY KEY,
  name VARCHAR(40) NOT NULL,
  monthly_price_cents INTEGER NOT NULL,
  gigabytes_included INTEGER NOT NULL
);

CREATE TABLE accounts (
  id INTEGER PRIMARY KEY,
  ref VARCHAR(40) NOT NULL UNIQUE,
  email VARCHAR(254) NOT NULL UNIQUE,
  name VARCHAR(200),
  username VARCHAR(64),
  password_hash VARCHAR(200),
  phone VARCHAR(32),
  language VARCHAR(8),
  primary_device_id INTEGER,
  created_at VARCHAR(32) NOT NULL
);
CREATE INDEX ix_accounts_phone ON accounts (phone);
CREATE INDEX ix_accounts_primary_device_id ON accounts (primary_device_id);

CREATE TABLE subscriptions (
  id INTEGER PRIMARY KEY,
  account_id INTEGER NOT NULL REFERENCES accounts (id),
  plan_id INTEGER NOT NULL REFERENCES plans (id),
  billing_address VARCHAR(300),
  started_at VARCHAR(32) NOT NULL,
  ended_at VARCHAR(32)
);
CREATE INDEX ix_subscriptions_account_id ON subscriptions (account_id);

CREATE TABLE devices (
  id INTEGER PRIMARY KEY,
  account_id INTEGER NOT NULL REFERENCES accounts (id),
  device_uid VARCHAR(64) NOT NULL UNIQUE,
  os VARCHAR(40),
  app_version VARCHAR(20),
  ad_id VARCHAR(64)
);
CREATE INDEX ix_devices_account_id ON devices (account_id);

CREATE TABLE usage_records (
  id INTEGER PRIMARY KEY,
  subscription_id INTEGER NOT NULL REFERENCES subscriptions (id),
  device_id INTEGER REFERENCES devices (id),
  period VARCHAR(7) NOT NULL,
  megabytes INTEGER NOT NULL,
  minutes INTEGER NOT NULL,
  ip_address VARCHAR(45)
);
CREATE INDEX ix_usage_records_subscription_id ON usage_records (subscription_id);
CREATE INDEX ix_usage_records_device_id ON usage_records (device_id);

CREATE TABLE threat_events (
  id INTEGER PRIMARY KEY,
  device_uid VARCHAR(64) NOT NULL,
  detected_at VARCHAR(32) NOT NULL,
  item VARCHAR(500) NOT NULL,
  verdict VARCHAR(20) NOT NULL,
  ip_address VARCHAR(45)
);
CREATE INDEX ix_threat_events_device_uid ON threat_events (device_uid);

CREATE TABLE invoices (
  id INTEGER PRIMARY KEY,
  account_id INTEGER REFERENCES accounts (id),
  number VARCHAR(20) NOT NULL UNIQUE,
  issued_on VARCHAR(10) NOT NULL,
  amount_cents INTEGER NOT NULL,
  customer_name VARCHAR(200),
  billing_address VARCHAR(300),
  email VARCHAR(254)
);
CREATE INDEX ix_invoices_account_id ON invoices (account_id);
CREATE INDEX ix_invoices_email ON invoices (email);

CREATE TABLE support_tickets (
  id INTEGER PRIMARY KEY,
  account_id INTEGER REFERENCES accounts (id),
  email VARCHAR(254),
  subject VARCHAR(200) NOT NULL,
  body TEXT,
  opened_at VARCHAR(32) NOT NULL
);
CREATE INDEX ix_support_tickets_account_id ON support_tickets (account_id);
CREATE INDEX ix_support_tickets_email ON support_tickets (email);

CREATE TABLE prospects (
  id INTEGER PRIMARY KEY,
  email VARCHAR(254) NOT NULL UNIQUE,
  name VARCHAR(200),
  source VARCHAR(40) NOT NULL,
  referred_by INTEGER REFERENCES accounts (id),
  created_at VARCHAR(32) NOT NULL
);
CREATE INDEX ix_prospects_referred_by ON prospects (referred_by);
