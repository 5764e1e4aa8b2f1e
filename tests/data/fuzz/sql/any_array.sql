SELECT room_id, event_id FROM event_forward_extremities WHERE room_id = ANY(ARRAY['!roomOneAbc:example.org','!roomTwoDef:example.org','!roomThreeGhi:example.org'])
