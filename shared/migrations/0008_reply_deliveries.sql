-- Reply delivery: one row per channel of an actioned cluster, written in the action's own
-- transaction. It is the outbox of chorus.replies (published_at is set once Kafka acknowledged
-- the record) and the record of the delivery into StreamChat (status, attempts, reason, sent_at).
-- message_id is the StreamChat message id, derived from the cluster and the channel, so a reply
-- posted twice is refused by StreamChat instead of reaching the fan twice (docs/replies.md).
CREATE TABLE reply_deliveries (
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    cluster_id    uuid NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
    channel_cid   text NOT NULL,
    visitor_id    text,
    message_id    text NOT NULL,
    status        text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    reason        text,
    attempts      integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    published_at  timestamptz,
    sent_at       timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cluster_id, channel_cid)
);
-- The relay looks only for the rows not yet on chorus.replies: a handful among all replies.
CREATE INDEX reply_deliveries_unpublished ON reply_deliveries (tenant_id, created_at) WHERE published_at IS NULL;

ALTER TABLE reply_deliveries ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON reply_deliveries
    USING (tenant_id = chorus_current_tenant()) WITH CHECK (tenant_id = chorus_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON reply_deliveries TO chorus_service;

-- The relay runs before any tenant is set: this function names the tenants that have replies
-- not yet published, and nothing else; their rows are then read under row-level security.
CREATE FUNCTION chorus_tenants_with_unpublished_replies() RETURNS SETOF uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$ SELECT DISTINCT tenant_id FROM reply_deliveries WHERE published_at IS NULL ORDER BY tenant_id $$;

REVOKE ALL ON FUNCTION chorus_tenants_with_unpublished_replies() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION chorus_tenants_with_unpublished_replies() TO chorus_service;
