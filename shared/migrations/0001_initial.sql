-- The initial Chorus schema: tenants and their credentials, raw events, documents with
-- vectors, StreamChat messages, clusters, Tavus conversations and privacy requests.
-- Every row carries tenant_id, and row-level security shows a transaction only the rows of
-- the tenant set in `chorus.tenant_id` (see shared/db.py).

CREATE EXTENSION IF NOT EXISTS vector;
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- The services log in with a role that is a member of chorus_service: it owns nothing,
-- is no superuser and cannot bypass row-level security.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'chorus_service') THEN
        CREATE ROLE chorus_service NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
END
$$;

CREATE FUNCTION chorus_current_tenant() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$ SELECT nullif(current_setting('chorus.tenant_id', true), '')::uuid $$;

CREATE TABLE tenants (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        text NOT NULL DEFAULT '',
    key_prefix  text NOT NULL,
    key_hash    bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- The StreamChat app secret is kept in clear: verifying an HMAC needs the secret itself.
CREATE TABLE streamchat_apps (
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    api_key             text PRIMARY KEY,
    api_secret          text NOT NULL,
    paid_channel_types  text[] NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tavus_tokens (
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    token_hash  bytea PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE documents (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    source          text NOT NULL,
    content_type    text NOT NULL,
    content_ref     text,
    external_id     text,
    doc_key         text NOT NULL,
    creator_id      text,
    conversation_id text,
    channel_cid     text,
    text            text NOT NULL,
    content_hash    bytea NOT NULL,
    tags            jsonb NOT NULL DEFAULT '{}',
    metadata        jsonb NOT NULL DEFAULT '{}',
    search_tsv      tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, text)) STORED,
    occurred_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    UNIQUE (tenant_id, source, doc_key)
);
CREATE INDEX documents_search_tsv ON documents USING gin (search_tsv);
CREATE INDEX documents_text_trgm ON documents USING gin (text gin_trgm_ops);
CREATE INDEX documents_tags ON documents USING gin (tags jsonb_path_ops);
CREATE INDEX documents_metadata ON documents USING gin (metadata jsonb_path_ops);
CREATE INDEX documents_tenant_created ON documents (tenant_id, created_at DESC);

-- Vectors live beside their documents, not in them: writing a vector into the documents row
-- would re-index its full-text and trigram indexes too (measured: 3.2 ms a row against 0.26 ms
-- for the HNSW insert alone). A vector belongs to the text it was computed from.
CREATE TABLE document_embeddings (
    document_id   uuid PRIMARY KEY REFERENCES documents (id) ON DELETE CASCADE,
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    model         text NOT NULL,
    dimensions    integer NOT NULL,
    content_hash  bytea NOT NULL,
    truncated     boolean NOT NULL DEFAULT false,
    embedding     vector({{embedding_dim}}) NOT NULL,
    embedded_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX document_embeddings_hnsw ON document_embeddings USING hnsw (embedding vector_cosine_ops);
CREATE INDEX document_embeddings_reuse ON document_embeddings (tenant_id, model, content_hash);

CREATE TABLE raw_events (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    source        text NOT NULL,
    event_type    text NOT NULL,
    external_id   text NOT NULL,
    occurred_at   timestamptz,
    received_at   timestamptz NOT NULL DEFAULT now(),
    content_hash  bytea NOT NULL,
    payload       jsonb NOT NULL DEFAULT '{}',
    tags          jsonb NOT NULL DEFAULT '{}',
    metadata      jsonb NOT NULL DEFAULT '{}',
    status        text NOT NULL DEFAULT 'received' CHECK (status IN ('received', 'processed', 'failed')),
    error         text,
    UNIQUE (tenant_id, source, external_id)
);

-- One document may stand for several raw events with the same content, and one vCon
-- record yields several documents.
CREATE TABLE document_references (
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    document_id   uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    raw_event_id  uuid NOT NULL REFERENCES raw_events (id) ON DELETE CASCADE,
    PRIMARY KEY (document_id, raw_event_id)
);
CREATE INDEX document_references_raw_event ON document_references (raw_event_id);

CREATE TABLE streamchat_messages (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    message_id          text NOT NULL,
    creator_id          text NOT NULL,
    channel_cid         text NOT NULL,
    channel_type        text,
    visitor_id          text,
    visitor_name        text,
    visitor_avatar_url  text,
    direction           text NOT NULL CHECK (direction IN ('inbound', 'outgoing')),
    is_paid             boolean NOT NULL DEFAULT false,
    text                text NOT NULL DEFAULT '',
    content_hash        bytea,
    document_id         uuid REFERENCES documents (id) ON DELETE SET NULL,
    message_created_at  timestamptz NOT NULL,
    message_updated_at  timestamptz,
    deleted_at          timestamptz,
    superseded_by       uuid REFERENCES streamchat_messages (id) ON DELETE SET NULL,
    superseded_at       timestamptz,
    raw_payload         jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, message_id)
);
CREATE INDEX streamchat_messages_channel
    ON streamchat_messages (tenant_id, creator_id, channel_cid, message_created_at DESC);
CREATE INDEX streamchat_messages_visitor ON streamchat_messages (tenant_id, visitor_id);

CREATE TABLE streamchat_deliveries (
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    webhook_id   text NOT NULL,
    message_id   text,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, webhook_id)
);

CREATE TABLE clusters (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    creator_id     text NOT NULL,
    status         text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'actioned')),
    centroid       vector({{embedding_dim}}),
    size           integer NOT NULL DEFAULT 0 CHECK (size >= 0),
    channel_count  integer NOT NULL DEFAULT 0 CHECK (channel_count >= 0),
    preview_text   text,
    response_text  text,
    actioned_at    timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX clusters_creator_status ON clusters (tenant_id, creator_id, status, updated_at DESC);

CREATE TABLE cluster_members (
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    cluster_id   uuid NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
    message_id   uuid NOT NULL UNIQUE REFERENCES streamchat_messages (id) ON DELETE CASCADE,
    channel_cid  text NOT NULL,
    similarity   real,
    joined_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cluster_id, message_id)
);

CREATE TABLE tavus_conversations (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id            uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    conversation_id      text NOT NULL,
    status               text NOT NULL DEFAULT 'active',
    shutdown_reason      text,
    replica_id           text,
    recording_uri        text,
    perception_analysis  jsonb,
    started_at           timestamptz,
    ended_at             timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, conversation_id)
);

CREATE TABLE tavus_messages (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    conversation_id  text NOT NULL,
    turn_index       integer NOT NULL,
    role             text NOT NULL,
    content          text NOT NULL,
    document_id      uuid REFERENCES documents (id) ON DELETE SET NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, conversation_id, turn_index)
);

CREATE TABLE tavus_webhook_events (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    event_hash       bytea NOT NULL,
    conversation_id  text NOT NULL,
    event_type       text NOT NULL,
    payload          jsonb NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, event_hash)
);

CREATE TABLE privacy_requests (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    party         text NOT NULL,
    counts        jsonb NOT NULL DEFAULT '{}',
    requested_at  timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz
);

-- Row-level security on every tenant table. It is enabled, not forced: the owner runs only
-- migrations and the credential lookups below, which must see across tenants.
DO $$
DECLARE
    table_name text;
BEGIN
    FOREACH table_name IN ARRAY ARRAY[
        'api_keys', 'streamchat_apps', 'tavus_tokens', 'documents', 'document_embeddings', 'raw_events',
        'document_references', 'streamchat_messages', 'streamchat_deliveries', 'clusters',
        'cluster_members', 'tavus_conversations', 'tavus_messages', 'tavus_webhook_events',
        'privacy_requests'
    ] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', table_name);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I USING (tenant_id = chorus_current_tenant()) '
            'WITH CHECK (tenant_id = chorus_current_tenant())', table_name);
    END LOOP;
END
$$;

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
    USING (id = chorus_current_tenant()) WITH CHECK (id = chorus_current_tenant());

-- A credential arrives before anyone knows the tenant: these functions answer only "which
-- tenant holds this credential", run as their owner, and reveal nothing else.
CREATE FUNCTION chorus_tenant_for_api_key(hash bytea) RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$ SELECT tenant_id FROM api_keys WHERE key_hash = hash AND revoked_at IS NULL $$;

CREATE FUNCTION chorus_tenant_for_tavus_token(hash bytea) RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$ SELECT tenant_id FROM tavus_tokens WHERE token_hash = hash $$;

CREATE FUNCTION chorus_streamchat_app(key text)
    RETURNS TABLE (tenant_id uuid, api_secret text, paid_channel_types text[])
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$ SELECT tenant_id, api_secret, paid_channel_types FROM streamchat_apps WHERE api_key = key $$;

-- Creating a tenant happens before a tenant is set, so it too runs as the owner.
CREATE FUNCTION chorus_create_tenant(tenant_name text) RETURNS uuid
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$ INSERT INTO tenants (name) VALUES (tenant_name) RETURNING id $$;

CREATE FUNCTION chorus_find_tenant(tenant_name text) RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$ SELECT id FROM tenants WHERE name = tenant_name $$;

REVOKE ALL ON FUNCTION chorus_tenant_for_api_key(bytea), chorus_tenant_for_tavus_token(bytea),
    chorus_streamchat_app(text), chorus_create_tenant(text), chorus_find_tenant(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION chorus_current_tenant(), chorus_tenant_for_api_key(bytea),
    chorus_tenant_for_tavus_token(bytea), chorus_streamchat_app(text),
    chorus_create_tenant(text), chorus_find_tenant(text) TO chorus_service;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO chorus_service;
