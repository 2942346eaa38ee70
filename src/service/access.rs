//! Loads what the rules of [`crate::domain::access`] need for one request, and nothing more.
//!
//! The rules themselves are pure and live in `domain/`; this module only fetches their inputs.
//! A question about one object reads that object, its category and the groups their lists
//! name (transitively), so its cost follows what the request touches, not the server's size.

use std::collections::{BTreeMap, BTreeSet};

use super::{Caller, Object, Result, ServiceError, decode};
use crate::domain::access::{self, RoomRights};
use crate::domain::{Category, Directory, Group, Kind, Principal, Room};
use crate::store::{ObjectRow, Store, Tx};

/// Where a rule's inputs are read: the pool (reads of a request that writes nothing) or the
/// write transaction of the request.
pub(super) enum Source<'a> {
    Pool(&'a Store),
    Tx(&'a mut Tx),
    /// The write transaction of a group of posts, with what it read so far: the posts of a
    /// group read their room, its category and groups once (the transaction holds them still:
    /// SQLite's one writer, PostgreSQL's shared row locks, which the posters of several nodes
    /// hold at once, taken for the whole group up front in the one order of invariant 2).
    Remembering(&'a mut Tx, &'a mut Remembered),
}

/// Objects a transaction read, by kind and name in NFC (`None`: absent), and the inputs the
/// node's streams share for its rooms.
#[derive(Default)]
pub(super) struct Remembered {
    objects: std::collections::HashMap<(Kind, String), Option<ObjectRow>>,
    /// By room id: [`RoomInputs`] loaded at or after the generation this transaction read
    /// with its locks. Their directory stands in for the groups the transaction would read
    /// (without a lock: a group read in the transaction is no more current than one read at
    /// its generation or later), once their room and category are the ones it locked.
    shared: std::collections::HashMap<i64, std::sync::Arc<RoomInputs>>,
    /// How many judgments took their directory from [`Remembered::shared`].
    pub(super) judged_on_shared: u64,
}

impl Remembered {
    fn key(kind: Kind, name: &str) -> (Kind, String) {
        let mut name = name.to_owned();
        crate::domain::normalise_name(&mut name);
        (kind, name)
    }

    /// Remembers the inputs the node's streams share for the room `room_id`, loaded at or
    /// after the generation the transaction read (see [`Remembered::shared`]).
    pub(super) fn share(&mut self, room_id: i64, inputs: std::sync::Arc<RoomInputs>) {
        self.shared.insert(room_id, inputs);
    }

    /// Remembers what reading the objects of `kind` named `asked` found: `rows`, and that the
    /// other names are absent.
    pub(super) fn remember(&mut self, kind: Kind, asked: &[String], rows: Vec<ObjectRow>) {
        for row in rows {
            self.objects.insert((kind, row.name.clone()), Some(row));
        }
        for name in asked {
            self.objects
                .entry(Remembered::key(kind, name))
                .or_insert(None);
        }
    }
}

impl Source<'_> {
    /// Reads an object. Inside a write transaction a room or category is locked (on
    /// PostgreSQL) until it ends, so that a write judged on it cannot commit after a
    /// concurrent change of it; groups are read without a lock.
    pub(super) async fn get(&mut self, kind: Kind, name: &str) -> Result<Option<ObjectRow>> {
        Ok(match self {
            Source::Pool(store) => store.get(kind, name).await?,
            Source::Tx(tx) if kind == Kind::Group => tx.read(kind, name).await?,
            Source::Tx(tx) => tx.get(kind, name).await?,
            Source::Remembering(tx, remembered) => {
                let key = Remembered::key(kind, name);
                if let Some(row) = remembered.objects.get(&key) {
                    return Ok(row.clone());
                }
                let row = if kind == Kind::Group {
                    tx.read(kind, name).await?
                } else {
                    tx.get_shared(kind, name).await?
                };
                remembered.objects.insert(key, row.clone());
                row
            }
        })
    }

    /// The shared inputs of the room `room_id` when this source holds some whose room and
    /// category are `room` and `category`: their directory then names exactly the groups
    /// these would be judged with.
    fn shared_inputs(
        &mut self,
        room_id: i64,
        room: &Room,
        category: &Category,
    ) -> Option<std::sync::Arc<RoomInputs>> {
        let Source::Remembering(_, remembered) = self else {
            return None;
        };
        let inputs = remembered
            .shared
            .get(&room_id)
            .filter(|inputs| inputs.room == *room && inputs.category == *category)?
            .clone();
        remembered.judged_on_shared += 1;
        Some(inputs)
    }

    async fn rooms_using_addin(&mut self, addin: &str) -> Result<Vec<String>> {
        Ok(match self {
            Source::Pool(store) => store.rooms_using_addin(addin).await?,
            Source::Tx(tx) | Source::Remembering(tx, _) => tx.rooms_using_addin(addin).await?,
        })
    }
}

/// The groups that `principals` name, with the groups those contain, and so on.
pub(super) async fn directory_for<'p>(
    source: &mut Source<'_>,
    principals: impl IntoIterator<Item = &'p Principal>,
) -> Result<Directory> {
    let mut pending: Vec<String> = principals
        .into_iter()
        .filter_map(|principal| match principal {
            Principal::Group(name) => Some(name.clone()),
            _ => None,
        })
        .collect();
    let mut visited = BTreeSet::new();
    let mut groups = BTreeMap::new();
    while let Some(name) = pending.pop() {
        if !visited.insert(name.clone()) {
            continue;
        }
        // A group that does not exist covers nobody; the directory simply lacks it.
        if let Some(row) = source.get(Kind::Group, &name).await? {
            let group: Group = decode(&row)?;
            pending.extend(group.members.iter().filter_map(|member| match member {
                Principal::Group(inner) => Some(inner.clone()),
                _ => None,
            }));
            groups.insert(group.name, group.members);
        }
    }
    Ok(Directory::new(groups))
}

/// The directory of every group, for questions about many objects at once.
pub(super) async fn whole_directory(store: &Store) -> Result<Directory> {
    let groups = store
        .list(Kind::Group)
        .await?
        .iter()
        .map(|row| decode::<Group>(row).map(|group| (group.name, group.members)))
        .collect::<Result<Vec<_>>>()?;
    Ok(Directory::new(groups))
}

/// What the rules need to judge anyone's rights in one room: the room, its category and the
/// groups their lists name. Live streams share it, per configuration generation, so that
/// 16,000 streams of one room decode its groups once, not once each.
pub(crate) struct RoomInputs {
    pub room: Room,
    pub category: Category,
    pub directory: Directory,
    /// [`RoomInputs::named_reader_hashes`], made once for every stream that asks.
    named_readers: std::sync::OnceLock<Option<Vec<u64>>>,
}

/// A user principal as a number the node's hub compares without reading the principal's text
/// (see [`RoomInputs::named_reader_hashes`]). Equal principals hash equal (fixed keys, never a
/// per-process seed); a collision only makes the hub judge a stream it could have passed over.
pub(super) fn principal_hash(principal: &Principal) -> u64 {
    std::hash::BuildHasher::hash_one(
        &std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default(),
        principal,
    )
}

impl RoomInputs {
    /// Loads them for the room with this id; `None` when it is no room, or its category is
    /// gone.
    pub(super) async fn load(store: &Store, room_id: i64) -> Result<Option<RoomInputs>> {
        let (Some(row), joined_category) = store.room_and_category(room_id).await? else {
            return Ok(None);
        };
        let room: Room = decode(&row)?;
        // The category the room's own field names: the one read beside it, unless the
        // room's `category` column disagreed with the field (never written so; read again).
        let mut category_name = room.category.clone();
        crate::domain::normalise_name(&mut category_name);
        let category_row = match joined_category {
            Some(category) if category.name == category_name => Some(category),
            _ => store.get(Kind::Category, &room.category).await?,
        };
        let Some(category_row) = category_row else {
            return Ok(None);
        };
        let category: Category = decode(&category_row)?;
        let directory = directory_for(
            &mut Source::Pool(store),
            room_and_scope_lists(&room, &category),
        )
        .await?;
        Ok(Some(RoomInputs {
            room,
            category,
            directory,
            named_readers: std::sync::OnceLock::new(),
        }))
    }

    /// The [`principal_hash`]es, sorted, of the only users other than administrators who may
    /// read the room, when its lists say so ([`access::readers_if_named_only`]); made once per
    /// loaded inputs (a generation), so that a room listing thousands of users one by one is
    /// not hashed again at every post.
    pub(super) fn named_reader_hashes(&self) -> Option<&[u64]> {
        self.named_readers
            .get_or_init(|| {
                access::readers_if_named_only(&self.room, &self.directory).map(|readers| {
                    let mut hashes: Vec<u64> = readers.into_iter().map(principal_hash).collect();
                    hashes.sort_unstable();
                    hashes.dedup();
                    hashes
                })
            })
            .as_deref()
    }

    pub(super) fn rights(&self, caller: &Caller) -> RoomRights {
        access::room_rights(caller.viewer(), &self.room, &self.category, &self.directory)
    }
}

/// A room with its category and the caller's rights in it.
pub(crate) struct RoomAccess {
    pub id: i64,
    pub room: Room,
    pub category: Category,
    pub rights: RoomRights,
}

/// The rights the caller has in the room stored as `row`; `None` when its category is gone.
pub(super) async fn rights_in_room(
    source: &mut Source<'_>,
    caller: &Caller,
    row: &ObjectRow,
) -> Result<Option<RoomAccess>> {
    let room: Room = decode(row)?;
    let Some(category_row) = source.get(Kind::Category, &room.category).await? else {
        return Ok(None);
    };
    let category: Category = decode(&category_row)?;
    let rights = match caller.principal() {
        // Perch's own administrators hold no roles, so they need no directory.
        None => access::room_rights(caller.viewer(), &room, &category, &Directory::default()),
        Some(_) => {
            if let Some(inputs) = source.shared_inputs(row.id, &room, &category) {
                inputs.rights(caller)
            } else {
                let directory =
                    directory_for(source, room_and_scope_lists(&room, &category)).await?;
                access::room_rights(caller.viewer(), &room, &category, &directory)
            }
        }
    };
    Ok(Some(RoomAccess {
        id: row.id,
        room,
        category,
        rights,
    }))
}

/// Loads a room the caller may see, with its category and the caller's rights in it.
///
/// # Errors
/// [`ServiceError::NotFound`] when the room does not exist or the caller may not see it.
pub(crate) async fn room_access(
    source: &mut Source<'_>,
    caller: &Caller,
    room_name: &str,
) -> Result<RoomAccess> {
    let not_found = || ServiceError::not_found(Kind::Room, room_name);
    let row = source
        .get(Kind::Room, room_name)
        .await?
        .ok_or_else(not_found)?;
    match rights_in_room(source, caller, &row).await? {
        Some(access) if access.rights.sees => Ok(access),
        _ => Err(not_found()),
    }
}

/// Whether the caller may see `object`.
pub(super) async fn sees(
    source: &mut Source<'_>,
    caller: &Caller,
    object: &Object,
) -> Result<bool> {
    let viewer = caller.viewer();
    if viewer.is_admin() {
        return Ok(true);
    }
    Ok(match object {
        Object::Group(_) => access::sees_group(viewer),
        Object::Category(category) => {
            let directory = directory_for(source, category_lists(category)).await?;
            access::sees_category(viewer, category, &directory)
        }
        Object::Room(room) => match source.get(Kind::Category, &room.category).await? {
            None => false,
            Some(row) => {
                let category: Category = decode(&row)?;
                let directory =
                    directory_for(source, room_and_scope_lists(room, &category)).await?;
                access::room_rights(viewer, room, &category, &directory).sees
            }
        },
        Object::Addin(addin) => {
            // An add-in shows through the rooms one sees; stop at the first.
            for room_name in source.rooms_using_addin(&addin.name).await? {
                let Some(row) = source.get(Kind::Room, &room_name).await? else {
                    continue;
                };
                if let Some(room) = rights_in_room(source, caller, &row).await?
                    && access::sees_addin(viewer, [room.rights])
                {
                    return Ok(true);
                }
            }
            false
        }
    })
}

/// Whether an object that exists must be reported to the caller as not found: a write that
/// collides with it (a name in use) would otherwise tell the caller it exists.
pub(super) async fn hidden_from(
    source: &mut Source<'_>,
    caller: &Caller,
    kind: Kind,
    name: &str,
) -> Result<bool> {
    if caller.is_admin() {
        return Ok(false);
    }
    let Some(row) = source.get(kind, name).await? else {
        return Ok(false);
    };
    let object = super::Stored::<Object>::from_row(&row)?;
    Ok(!sees(source, caller, &object.spec).await?)
}

/// What a user may see among many objects, computed once for a listing.
pub(super) struct ListView {
    directory: Directory,
    categories: BTreeMap<String, Category>,
}

impl ListView {
    pub(super) async fn load(store: &Store) -> Result<ListView> {
        let categories = store
            .list(Kind::Category)
            .await?
            .iter()
            .map(|row| decode::<Category>(row).map(|category| (category.name.clone(), category)))
            .collect::<Result<_>>()?;
        Ok(ListView {
            directory: whole_directory(store).await?,
            categories,
        })
    }

    pub(super) fn room_rights(&self, caller: &Caller, room: &Room) -> RoomRights {
        match self.categories.get(&room.category) {
            Some(category) => access::room_rights(caller.viewer(), room, category, &self.directory),
            None => RoomRights::default(),
        }
    }

    pub(super) fn sees_category(&self, caller: &Caller, category: &Category) -> bool {
        access::sees_category(caller.viewer(), category, &self.directory)
    }
}

fn category_lists(category: &Category) -> impl Iterator<Item = &Principal> {
    category
        .allowed_members
        .iter()
        .chain(&category.denied_members)
        .chain(&category.creators)
}

fn room_and_scope_lists<'a>(
    room: &'a Room,
    category: &'a Category,
) -> impl Iterator<Item = &'a Principal> {
    room.members
        .iter()
        .chain(&room.managers)
        .chain(&room.presenters)
        .chain(&category.allowed_members)
        .chain(&category.denied_members)
        .chain(&category.creators)
}
