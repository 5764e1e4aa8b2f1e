SELECT stream_ordering FROM events WHERE room_id = $1 AND stream_ordering BETWEEN $2 AND $3 AND type IN ($4, $5)
