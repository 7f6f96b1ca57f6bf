// Signed picture URLs in the console client: asked for in batches, kept until shortly before they
// expire, `null` for a picture that is gone; a picture reply goes out as an `image` frame.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { MediaUrls, REFRESH_BEFORE_MS } from '../../../web_admin/js/client/media.js';
import { Outbox } from '../../../web_admin/js/client/outbox.js';
import { FakeClock } from '../fakes.js';

const A = 'a'.repeat(32);
const B = 'b'.repeat(32);

function setup() {
  const clock = new FakeClock();
  const asked = [];
  let changes = 0;
  const api = {
    signMedia: async (ids) => {
      asked.push(ids);
      const exp = Math.floor(clock.now() / 1000) + 600;
      return { images: Object.fromEntries(ids.map((id) => [id, id === B ? null
        : { url: `/media/${id}/full?e=${exp}`, thumb_url: `/media/${id}/thumb?e=${exp}`, expires_at: exp }])) };
    },
  };
  const media = new MediaUrls({ api, clock, onChange: () => { changes += 1; } });
  return { clock, media, asked, changes: () => changes };
}

test('ids wanted together are signed in one request; a gone picture is null', async () => {
  const { clock, media, asked, changes } = setup();
  assert.equal(media.get(A), undefined);
  assert.equal(media.get(B), undefined);
  assert.equal(media.get(A), undefined, 'asking twice queues once');
  await clock.advance(20);
  assert.deepEqual(asked, [[A, B]]);
  assert.match(media.get(A).thumb_url, /\/media\/a+\/thumb/);
  assert.equal(media.get(B), null);
  assert.equal(changes(), 1);
  await clock.advance(20);
  assert.equal(asked.length, 1, 'nothing asked again while the URLs are fresh');
});

test('a URL about to expire is signed again', async () => {
  const { clock, media, asked } = setup();
  media.get(A);
  await clock.advance(20);
  await clock.advance(600_000 - REFRESH_BEFORE_MS + 1000);
  assert.ok(media.get(A), 'the old URL is still shown meanwhile');
  await clock.advance(20);
  assert.equal(asked.length, 2);
});

test('a picture reply is an image frame with the same cmid rules as text', () => {
  const clock = new FakeClock();
  const sent = [];
  const box = new Outbox({ clock, send: (f) => { sent.push(f); return true; } });
  box.connected(1);
  box.add('o_1', 'c1', '[图片]', { id: A, thumb: { width: 320, height: 240 } });
  assert.deepEqual(sent, [{ type: 1, openid: 'o_1', image: A, cmid: 'c1' }]);
});
