WITH stale AS (
    SELECT user_id, device_id FROM devices WHERE last_seen < 1690000000000 AND hidden = FALSE
)
INSERT INTO device_lists_outbound_pokes (destination, stream_id, user_id, device_id, sent, ts)
SELECT 'matrix.remote-server.example', 77001, user_id, device_id, FALSE, 1700000000999 FROM stale
