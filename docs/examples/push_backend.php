<?php
// A backend pushing to kefu's TCP push port the way Workerman backends did: one persistent
// socket, one JSON object per line, read the reply line ("ok" / "fail", or {"count": n}).
// Usage: php push_backend.php [port] '<json>' '<json>' …   (prints one reply per push)
// docs/push.md explains every line kefu takes.

$port = $argv[1] ?? 5678;
$client = stream_socket_client("tcp://127.0.0.1:$port", $errno, $errmsg, 1);
if (!$client) {
    fwrite(STDERR, "cannot reach kefu's push port: $errmsg\n");
    exit(1);
}

function kefu_push($client, array $data): string
{
    fwrite($client, json_encode($data, JSON_UNESCAPED_UNICODE) . "\n");
    return trim(fgets($client));   // "ok", "fail", or a JSON answer
}

foreach (array_slice($argv, 2) as $json) {
    echo kefu_push($client, json_decode($json, true)), "\n";
}
// The same socket serves as many lines as you like, e.g.:
//   kefu_push($client, ['uid' => 123, 'msg' => '你有一条新订单']);          // Workerman page bound to 123
//   kefu_push($client, ['task_id' => 'task 123456', 'status' => 'done']);   // GatewayWorker page
//   kefu_push($client, ['group' => 'news', 'title' => '上新了']);          // every page in the group
//   kefu_push($client, ['kefu' => 'join', 'uid' => '42', 'group' => 'vip']);
//   kefu_push($client, ['kefu' => 'online', 'uid' => '42']);               // "ok" = online
fclose($client);
