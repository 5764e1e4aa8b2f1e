-- leading comment with a 'quote'
SELECT /* inline /* nested 'syt_inCommentSecret' */ still comment */ stream_id
  FROM push_rules_stream -- trailing comment 'x
 WHERE user_id = '@frank:example.org' /* last */;
