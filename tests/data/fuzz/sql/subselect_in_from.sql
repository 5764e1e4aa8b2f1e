SELECT COUNT(*) FROM (SELECT DISTINCT m.user_id FROM public.room_memberships AS m WHERE m.room_id = '!countMeRoom:example.org' AND m.membership = 'join') AS joined
