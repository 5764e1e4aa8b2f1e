SELECT event_id, stream_ordering, topological_ordering, type, state_key
  FROM events
 WHERE room_id = '!pQrStUvWxYzAbCdEf:example.org'
   AND stream_ordering > 4815162342
   AND NOT outlier
 ORDER BY stream_ordering DESC
 LIMIT 100;
