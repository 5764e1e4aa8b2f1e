WITH RECURSIVE room_hierarchy(room_id, depth) AS (
    SELECT room_id, 0 FROM room_stats_state WHERE room_id = '!spaceRootXyz:example.org'
    UNION ALL
    SELECT c.state_key, h.depth + 1
      FROM current_state_events AS c
      JOIN room_hierarchy AS h ON c.room_id = h.room_id
     WHERE c.type = 'm.space.child' AND h.depth < 50
)
SELECT room_id, depth FROM room_hierarchy
