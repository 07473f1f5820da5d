-- A cluster's totals are updated by the members that join and leave it, not recomputed from all
-- of them (shared/clusters.py): these indexes find its earliest member (the preview) and count
-- the members of a channel without reading the whole cluster.
CREATE INDEX cluster_members_first ON cluster_members (cluster_id, message_created_at);
CREATE INDEX cluster_members_cluster_channel ON cluster_members (cluster_id, channel_cid);
