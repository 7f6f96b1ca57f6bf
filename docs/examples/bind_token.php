<?php
// Minting a bind token for kefu in plain PHP (no Composer needed): a JWT signed with HS256 and
// KEFU_PUSH_BIND_SECRET. The page sends it as {"cmd": "bind", "token": …}; kefu checks the
// signature, `exp` and `aud`. With firebase/php-jwt it is one line instead:
//   \Firebase\JWT\JWT::encode($claims, $secret, 'HS256');
// Usage: php bind_token.php <uid> [group …]   (KEFU_PUSH_BIND_SECRET from the environment)

function kefu_b64url(string $bytes): string
{
    return rtrim(strtr(base64_encode($bytes), '+/', '-_'), '=');
}

function kefu_bind_token(string $uid, array $groups, string $secret, int $ttl = 300,
                         string $audience = 'kefu'): string
{
    $now = time();
    $claims = ['sub' => $uid, 'aud' => $audience, 'iat' => $now, 'exp' => $now + $ttl];
    if ($groups) {
        $claims['groups'] = array_values($groups);
    }
    $head = kefu_b64url(json_encode(['alg' => 'HS256', 'typ' => 'JWT']));
    $body = kefu_b64url(json_encode($claims, JSON_UNESCAPED_UNICODE));
    $sig = kefu_b64url(hash_hmac('sha256', "$head.$body", $secret, true));
    return "$head.$body.$sig";
}

if (PHP_SAPI === 'cli' && realpath($argv[0]) === __FILE__) {
    $secret = getenv('KEFU_PUSH_BIND_SECRET');
    $ttl = (int) (getenv('KEFU_BIND_TOKEN_TTL') ?: 300);
    echo kefu_bind_token($argv[1], array_slice($argv, 2), $secret, $ttl), "\n";
}
