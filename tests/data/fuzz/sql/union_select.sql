(SELECT room_id FROM room_memberships WHERE user_id = '@kate:example.org') UNION (SELECT room_id FROM local_current_membership WHERE user_id = '@kate:example.org')
