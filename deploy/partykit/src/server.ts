/**
 * The PartyKit room server for partywidget: TinyBase's own `TinyBasePartyKitServer`,
 * unchanged, with its default configuration (store path `/store`, no message prefix,
 * no storage prefix, permissive CORS headers).
 *
 * Why TinyBase's class and not our own: every room then behaves exactly like the
 * reference that TinyBase's JavaScript clients were written against, so partywidget
 * notebooks and TinyBase web apps can share rooms. partywidget's own Python server
 * (`partywidget serve`) speaks the same protocol for single-machine use; this template
 * is for scaling out on PartyKit/Cloudflare.
 *
 * To restrict writes, override the `can*` hooks, e.g.:
 *
 *   async canSetCell(tableId, rowId, cellId, cell, initialSave, requestOrConnection) {
 *     return tableId !== 'readonly';
 *   }
 *
 * Keep the configuration at its defaults unless every client is given the same
 * `storePath` / `messagePrefix`. If you do change it, assign `this.config` fields in a
 * constructor after `super(party)` rather than replacing `config` with a class field:
 * a field initialiser runs after TinyBase's constructor filled in the defaults and
 * would drop them (notably the CORS response headers).
 */
import type * as Party from 'partykit/server';
import {TinyBasePartyKitServer} from 'tinybase/persisters/persister-partykit-server';

export default class TinyBaseRoom
  extends TinyBasePartyKitServer
  implements Party.Server
{
  constructor(readonly room: Party.Room) {
    super(room);
  }
}
